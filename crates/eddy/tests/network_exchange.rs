//! `execution.network-exchange`: the local mini-cluster with every non-chained exchange over a
//! real loopback TCP data connection (`eddy_runtime::net`), as between TaskManagers.
//!
//! Each job is checked against what plain Rust computes from its input, and against the same
//! job run with in-process channels. Every wait is bounded and waits on an observed condition.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use eddy::prelude::*;
use eddy::sink::{Sink, SinkContext, SinkWriter};
use eddy::{Batch, Configuration, DataStream};

/// Generous: every job here ends in well under a second when healthy.
const JOB_LIMIT: Duration = Duration::from_secs(30);

fn env(parallelism: usize, network: bool) -> StreamExecutionEnvironment {
    let mut config = Configuration::new();
    config.set("execution.network-exchange", if network { "true" } else { "false" });
    StreamExecutionEnvironment::with_configuration(config).with_parallelism(parallelism)
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Waits for the job to end, at most [`JOB_LIMIT`]; cancels it and fails the test otherwise.
fn await_end(client: &JobClient) -> JobStatus {
    let status = client.wait_timeout(JOB_LIMIT);
    if !status.is_terminal() {
        client.cancel();
        panic!("the job did not end within {JOB_LIMIT:?} (status {status:?})");
    }
    status
}

// ---------------------------------------------------------------------------------------------
// WordCount
// ---------------------------------------------------------------------------------------------

/// The WordCount pipeline of `eddy-examples`: flat_map split_whitespace → key_by word → sum.
fn word_count(lines: &DataStream<String>) -> DataStream<(String, i64)> {
    lines
        .flat_map(|line: String, out: &mut Collector<(String, i64)>| {
            for word in line.split_whitespace() {
                out.collect((word.to_string(), 1));
            }
        })
        .name("Tokenizer")
        .key_by(|t: &(String, i64)| t.0.clone())
        .sum(|t: &mut (String, i64)| &mut t.1)
        .name("Counter")
}

/// `lines` lines over a skewed vocabulary of 300 words, from a linear congruential generator.
fn generate_lines(seed: u64, lines: usize) -> Vec<String> {
    let mut state = seed;
    let mut below = |n: u64| {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    (0..lines)
        .map(|_| {
            let words = below(10);
            (0..words).map(|_| format!("w{}", below(300) * below(300) / 300)).collect::<Vec<_>>().join(" ")
        })
        .collect()
}

fn run_word_count(
    lines: &[String],
    parallelism: usize,
    mode: RuntimeMode,
    network: bool,
) -> Vec<(String, i64)> {
    let env = env(parallelism, network);
    env.set_runtime_mode(mode);
    let got = word_count(&env.from_collection(lines.to_vec())).execute_and_collect().unwrap();
    sorted(got)
}

#[test]
fn word_count_over_the_network_equals_an_independent_count_and_the_local_run() {
    let lines = generate_lines(7, 5_000);
    let mut expected: HashMap<String, i64> = HashMap::new();
    for word in lines.iter().flat_map(|l| l.split_whitespace()) {
        *expected.entry(word.to_string()).or_insert(0) += 1;
    }
    for mode in [RuntimeMode::Streaming, RuntimeMode::Batch] {
        for parallelism in [1, 2, 4] {
            let got = run_word_count(&lines, parallelism, mode, true);
            let what = format!("{mode:?} at parallelism {parallelism}");
            let mut per_word: HashMap<String, Vec<i64>> = HashMap::new();
            for (word, count) in &got {
                per_word.entry(word.clone()).or_default().push(*count);
            }
            assert_eq!(per_word.len(), expected.len(), "{what}: one key per word");
            for (word, n) in &expected {
                let mut counts = per_word[word].clone();
                counts.sort_unstable();
                // STREAMING emits every running count, BATCH only the final one.
                let want: Vec<i64> = if mode == RuntimeMode::Batch { vec![*n] } else { (1..=*n).collect() };
                assert_eq!(counts, want, "{what}: counts of {word}");
            }
            assert_eq!(got, run_word_count(&lines, parallelism, mode, false), "{what}: network vs local");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Union, rebalance, broadcast; two inputs
// ---------------------------------------------------------------------------------------------

/// Tags every record with the index of the subtask that processed it.
#[derive(Clone, Default)]
struct TagSubtask {
    index: usize,
}

impl<T: Data> ProcessFunction<T, (usize, T)> for TagSubtask {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.index = ctx.index_of_this_subtask();
        Ok(())
    }

    fn process_element(&mut self, value: T, _: &mut Context, out: &mut Collector<(usize, T)>) -> Result<()> {
        out.collect((self.index, value));
        Ok(())
    }
}

fn union_rebalance_broadcast(network: bool) -> (Vec<i64>, Vec<(usize, i64)>) {
    let env = env(3, network);
    let a = env.from_collection((0..400i64).collect());
    let b = env.from_sequence(1_000, 1_599);
    let c = env.from_generator(300, |i| -(i as i64));
    let all = a.union(&b).union(&c).rebalance().map(|x: i64| x * 2).set_parallelism(2);
    let total = all.execute_and_collect().unwrap();
    let env = self::env(3, network);
    let broadcast = env
        .from_collection((0..250i64).collect())
        .broadcast()
        .process(TagSubtask::default())
        .set_parallelism(3)
        .execute_and_collect()
        .unwrap();
    (sorted(total), sorted(broadcast))
}

#[test]
fn union_rebalance_and_broadcast_over_the_network() {
    let (total, broadcast) = union_rebalance_broadcast(true);
    let mut expected: Vec<i64> =
        (0..400).chain(1_000..1_600).chain((0..300).map(|i| -i)).map(|x| x * 2).collect();
    expected.sort();
    assert_eq!(total, expected);
    let expected_broadcast: Vec<(usize, i64)> =
        sorted((0..3).flat_map(|s| (0..250).map(move |v| (s, v))).collect());
    assert_eq!(broadcast, expected_broadcast, "every subtask gets every record");
    assert_eq!((total, broadcast), union_rebalance_broadcast(false), "network vs local");
}

fn co_map_job(network: bool) -> Vec<String> {
    let env = env(3, network);
    let numbers = env.from_sequence(1, 700);
    let words = env.from_collection((0..500).map(|i| format!("w{i}")).collect::<Vec<_>>());
    let got = numbers
        .connect(&words)
        .co_map(|n: i64| format!("n:{}", n * 2), |w: String| format!("s:{w}"))
        .set_parallelism(2)
        .execute_and_collect()
        .unwrap();
    sorted(got)
}

#[test]
fn a_two_input_job_over_the_network() {
    let got = co_map_job(true);
    let mut expected: Vec<String> = (1..=700).map(|n| format!("n:{}", n * 2)).collect();
    expected.extend((0..500).map(|i| format!("s:w{i}")));
    assert_eq!(got, sorted(expected));
    assert_eq!(got, co_map_job(false), "network vs local");
}

// ---------------------------------------------------------------------------------------------
// Event time: watermarks cross the network
// ---------------------------------------------------------------------------------------------

/// A watermark after every record: its timestamp (a strictly true promise only for in-order
/// input; records behind it are late).
#[derive(Clone)]
struct EveryRecord;

impl<T> WatermarkGenerator<T> for EveryRecord {
    fn on_event(&mut self, _: &T, timestamp: i64, output: &mut WatermarkOutput) {
        output.emit_watermark(timestamp);
    }
    fn on_periodic_emit(&mut self, _: &mut WatermarkOutput) {}
}

const WINDOW_MS: i64 = 10;

/// `(key, event timestamp)`, mostly in order with some records far behind the rest.
fn events() -> Vec<(u64, i64)> {
    (0..3_000i64)
        .map(|i| {
            let ts = if i % 97 == 50 { i - 60 } else { i };
            ((i as u64 * 7919) % 13, ts)
        })
        .collect()
}

/// Counts per key and tumbling window, `(key, window start, count)`, with late records dropped
/// as the per-record watermark dictates: one source subtask, so each window subtask sees the
/// records and watermarks in the order the source emitted them.
fn run_windows(parallelism: usize, network: bool) -> Vec<(u64, i64, u64)> {
    let env = env(parallelism, network);
    let strategy =
        WatermarkStrategy::for_generator(|| EveryRecord).with_timestamp_assigner(|e: &(u64, i64), _| e.1);
    let got = env
        .from_collection(events())
        .assign_timestamps_and_watermarks(strategy)
        .map(|(k, ts): (u64, i64)| (k, ts.div_euclid(WINDOW_MS) * WINDOW_MS, 1u64))
        .key_by(|t: &(u64, i64, u64)| t.0)
        .window(TumblingEventTimeWindows::of(Duration::from_millis(WINDOW_MS as u64)))
        .reduce(|a, b| (a.0, a.1, a.2 + b.2))
        .execute_and_collect()
        .unwrap();
    sorted(got)
}

#[test]
fn event_time_windows_over_the_network_match_the_local_run() {
    // A record is dropped when its window's last millisecond is at or behind the watermark,
    // which is the largest timestamp before it.
    let mut expected: BTreeMap<(u64, i64), u64> = BTreeMap::new();
    let mut watermark = i64::MIN;
    let mut late = 0;
    for (k, ts) in events() {
        let start = ts.div_euclid(WINDOW_MS) * WINDOW_MS;
        if start + WINDOW_MS - 1 <= watermark {
            late += 1;
        } else {
            *expected.entry((k, start)).or_default() += 1;
        }
        watermark = watermark.max(ts);
    }
    assert!(late > 0, "the input must have late records");
    let expected: Vec<(u64, i64, u64)> = expected.into_iter().map(|((k, s), c)| (k, s, c)).collect();
    for parallelism in [1, 2, 4] {
        let got = run_windows(parallelism, true);
        assert_eq!(got, expected, "parallelism {parallelism}");
        assert_eq!(got, run_windows(parallelism, false), "parallelism {parallelism}: network vs local");
    }
}

// ---------------------------------------------------------------------------------------------
// Cancellation and failures
// ---------------------------------------------------------------------------------------------

/// Counts the records it receives.
#[derive(Clone, Default)]
struct CountingSink(Arc<AtomicU64>);

struct CountingWriter(Arc<AtomicU64>);

impl<T: Data> Sink<T> for CountingSink {
    fn create_writer(&self, _: &SinkContext) -> Result<Box<dyn SinkWriter<T>>> {
        Ok(Box::new(CountingWriter(self.0.clone())))
    }
}

impl<T: Data> SinkWriter<T> for CountingWriter {
    fn write_batch(&mut self, batch: Batch<T>) -> Result<()> {
        self.0.fetch_add(batch.len() as u64, Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn cancel_ends_an_unbounded_job_over_the_network() {
    let env = env(2, true);
    let sink = CountingSink::default();
    env.from_source(DataGeneratorSource::unbounded(|i| i), "Endless")
        .map(|i: u64| i.wrapping_mul(31))
        .rebalance()
        .map(|i: u64| i + 1)
        .set_parallelism(3)
        .sink_to(sink.clone(), "Count")
        .set_parallelism(1);
    let client = env.execute_async("endless over the network").unwrap();
    let deadline = Instant::now() + JOB_LIMIT;
    while sink.0.load(Ordering::SeqCst) < 10_000 {
        assert!(Instant::now() < deadline, "the sink saw too few records");
        assert!(!client.wait_timeout(Duration::from_millis(5)).is_terminal(), "the job ended by itself");
    }
    let cancelled = Instant::now();
    client.cancel();
    assert_eq!(client.wait_timeout(Duration::from_secs(10)), JobStatus::Canceled);
    assert!(cancelled.elapsed() < Duration::from_secs(10));
    match client.wait() {
        Err(EddyError::Cancelled(id)) => assert_eq!(id, client.job_id()),
        other => panic!("expected Cancelled, got {other:?}"),
    }
}

/// Fails on record `bad`.
#[derive(Clone)]
struct RejectOne {
    bad: i64,
}

impl ProcessFunction<i64, i64> for RejectOne {
    fn process_element(&mut self, v: i64, _: &mut Context, out: &mut Collector<i64>) -> Result<()> {
        if v == self.bad {
            return Err(EddyError::user(format!("root cause: record {v}")));
        }
        out.collect(v);
        Ok(())
    }
}

#[test]
fn a_failing_operator_fails_the_job_with_its_root_cause_not_a_network_error() {
    for parallelism in [1, 2, 4] {
        let env = env(parallelism, true);
        env.from_sequence(0, 50_000)
            .rebalance()
            .process(RejectOne { bad: 20_000 })
            .name("Validator")
            .rebalance()
            .map(|v: i64| v + 1)
            .sink_to(CountingSink::default(), "Count");
        let client = env.execute_async("failing over the network").unwrap();
        assert_eq!(await_end(&client), JobStatus::Failed, "parallelism {parallelism}");
        let err = client.wait().unwrap_err();
        let text = err.to_string();
        assert!(text.contains("root cause: record 20000"), "parallelism {parallelism}: {text}");
        assert!(
            matches!(&err, EddyError::Task { operator, .. } if operator == "Validator"),
            "parallelism {parallelism}: {err:?}"
        );
    }
}

/// Fails on record `bad` in the first attempt only.
#[derive(Clone)]
struct FailFirstAttempt {
    bad: i64,
    attempt: usize,
}

impl ProcessFunction<i64, i64> for FailFirstAttempt {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.attempt = ctx.attempt_number();
        Ok(())
    }

    fn process_element(&mut self, v: i64, _: &mut Context, out: &mut Collector<i64>) -> Result<()> {
        if v == self.bad && self.attempt == 0 {
            return Err(EddyError::user(format!("first attempt fails on {v}")));
        }
        out.collect(v);
        Ok(())
    }
}

#[test]
fn a_restarted_job_runs_its_next_attempt_over_new_connections() {
    let mut config = Configuration::new();
    config.set("execution.network-exchange", "true");
    config.set("restart-strategy.type", "fixed-delay");
    config.set("restart-strategy.fixed-delay.attempts", "2");
    config.set("restart-strategy.fixed-delay.delay", "1 ms");
    let env = StreamExecutionEnvironment::with_configuration(config).with_parallelism(2);
    let sink = CountingSink::default();
    env.from_sequence(1, 10_000)
        .rebalance()
        .process(FailFirstAttempt { bad: 5_000, attempt: 0 })
        .rebalance()
        .sink_to(sink.clone(), "Count");
    let client = env.execute_async("restart over the network").unwrap();
    assert_eq!(await_end(&client), JobStatus::Finished);
    client.wait().unwrap();
    assert_eq!(client.restarts(), 1);
    // The failed attempt's records are counted too (no checkpoints yet): at least one full run.
    assert!(sink.0.load(Ordering::SeqCst) >= 10_000);
}
